"""Tests of the sources: sets of things found at run time."""
