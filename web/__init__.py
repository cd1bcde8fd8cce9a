"""The HTTP face: the Flask app factory, one blueprint per resource, the dashboard and the CLI.

The web talks only to :mod:`pipelines`; it never imports an actor.
"""
