"""The policy: model, load + validate (every error at once), live store, classes."""
