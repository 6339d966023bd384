"""datasette-lambda-action: publish CSV/JSON/SQLite data as a Datasette site on AWS Lambda."""

# The version, in one place: pyproject.toml reads it (`attr:`), releases tag it (`v` + this).
__version__ = "1.0.0"
