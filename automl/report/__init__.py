"""What a person sees: the run report (HTML + pictures) and the console progress of a search."""
