"""Revisions, oldest first by `down_revision`; packaged so that a wheel ships them."""
