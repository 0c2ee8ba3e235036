"""The API token roles, in a module of their own so the command line can name them without loading the database layer."""

ROLES = ("operator", "service_point", "read_only", "approver")
