"""shop-recs: AI recommendations, personalised search and ads for a Django shop."""

__version__ = "0.1.0"
