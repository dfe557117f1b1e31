"""SSL methods: the contract (:mod:`harness.methods.base`) and the method registry."""
