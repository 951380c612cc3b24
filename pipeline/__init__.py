"""End-to-end commands: fetching STARE, and running the whole pipeline with one config."""
