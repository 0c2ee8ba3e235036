"""Resource archiver: CKAN-style download, record and keep of every resource of a portal."""
