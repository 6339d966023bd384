"""datasette-lambda-action: publish CSV/JSON/SQLite data as a Datasette site on AWS Lambda."""

__version__ = "0.1.0"
