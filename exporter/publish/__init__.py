"""Publish: public exports become versions of an agency's Zenodo record, exactly once."""
