"""Typed helpers of gim's test suite; test/conftest.py turns them into fixtures."""
