"""What the test folders share: fixtures, waits, services, processes and fake clients, one module each.

Test modules import helpers from here, never from a conftest or from another test module; the
conftests only import the fixtures they offer to their folder.
"""
