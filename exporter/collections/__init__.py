"""Collections: user image collections polled from a source, converted, held in quarantine until approved, then published for Zooniverse."""
