"""The public path of inspectlab's user error (`from inspectlab.errors import InspectlabError`); it lives in
`inspectlab.core.errors`."""

from inspectlab.core.errors import InspectlabError

__all__ = ["InspectlabError"]
