"""Vendor files into the repository: parsing, row checks and quarantine, the landing folder."""
