"""The workers' advertised GPUs: the inventory the submit checks and the GPUs page shows."""
