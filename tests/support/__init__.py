"""Test helpers: real servers on loopback for tests that must not mock the network."""
