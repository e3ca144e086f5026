"""Carbon accounting: the ledger store, emissions of finished pods, reports."""
