"""Platform-neutral library behind every pipeline component.

Plain Python, unit-tested without KFP: the components in `components/` are thin
shells that call into these modules, on this machine and on Vertex alike.
"""
