"""gdwlib: Generalized Data Weighting (class-level gradient manipulation), reproduced."""
__version__ = "0.1.0"
