"""Result records: everything needed to reproduce a number, next to the number."""
