"""Channels: one adapter per provider behind one interface."""
