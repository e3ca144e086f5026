"""Temporal shifting: gate requests, the shared planner, the controller, the webhook."""
