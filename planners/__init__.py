"""Planners: choose actions by imagining inside the world model (see planners/base.py)."""
