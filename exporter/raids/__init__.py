"""RAiD registry: agencies, service points and raids, and their public and private exports."""
