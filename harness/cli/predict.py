"""``harness predict``: apply a run's fine-tuned network to a folder of micrographs."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("predict")
@click.option("--run", "run_dir", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Run folder holding model.safetensors and model.json (every `harness run` writes them).")
@click.option("--images", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Folder of micrographs: plain, or in the folder format (images/, optional metadata.csv).")
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="New or empty output folder outside the image folder: masks/, overlays/, particles.csv, "
                   "images.csv, histograms.")
@click.option("--working-scale", type=float, default=None, metavar="F",
              help="Resample every image by F before the network, instead of the run's own factor (model.json "
                   "working_scale: 1.0 when the run's particles were small, else below 1 with each image's own "
                   "second look). For micrographs whose particles are k times wider in pixels than the run's "
                   "labelled ones, F = working_scale / k (e.g. 0.5 for particles twice as wide at factor 1.0); F "
                   "is used as given for every image, with no second look. Masks and sizes stay in the images' "
                   "own pixels.")
@click.option("--print-marks/--no-print-marks", default=True, show_default=True,
              help="Particles at least half on what the OCR reads as print (panel letters, scale bars and their "
                   "labels burned into a figure) are not counted, as in runs; images.csv's dropped_on_print and "
                   "the cyan of overlays/ show them. --no-print-marks for images that carry no print over the "
                   "specimen (raw instrument exports, whose text sits in the data bar): the OCR can read a bright "
                   "clump of particles as a digit, and that clump's particles would be lost.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def predict(run_dir: Path, images: Path, out: Path, working_scale: float | None, print_marks: bool, device: str,
            quiet: bool) -> None:
    """Segment every image of IMAGES with the model of RUN and measure its particles.

    Pixel sizes come from metadata.csv, the image's tags or its printed scale bar, as in
    `harness data check`; where none is found, sizes are in px only. Writes OUT/masks/<id>.png
    (16-bit instance masks), OUT/overlays/<id>.png, OUT/particles.csv (one row per particle: area and
    equivalent diameter in px and nm, border flag), OUT/images.csv (one row per image, also where
    nothing was found: count, count clear of the border, mean/median/sd diameter of those, particles
    found on print and not counted),
    OUT/histograms/<id>.png and OUT/histogram.png. Sizes in images.csv and the histograms leave out
    particles cut by the border, as the metrics do. OUT appears only when every image is done.

    Example: harness predict --run runs/synthetic-sem/fcmae-1pct-... --images my_micrographs --out predicted
    """
    from harness.predict import predict_folder
    from harness.task.scale import SECOND_LOOK_MARGIN

    summary = predict_folder(run_dir, images, out, device=device, progress=not quiet, working_scale=working_scale,
                             print_marks=print_marks)
    looks = "" if summary.second_look_px is None else f" (further where particles came out over " \
                                                      f"{SECOND_LOOK_MARGIN:g} x {summary.second_look_px:g} px)"
    click.echo(f"{summary.images} image(s), {summary.particles} particle(s) at working scale "
               f"{summary.working_scale:g}{looks}; pixel size known for {summary.with_pixel_size}; wrote "
               f"{summary.out}/particles.csv, images.csv, masks/, overlays/, histograms/")
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)


COMMANDS = [predict]
