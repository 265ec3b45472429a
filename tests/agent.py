"""The test agent moved to ``dr.testkit.agent`` (the demo uses it too); re-exported for older imports."""

from dr.testkit.agent import DR, JobRun, NodeAgent, rfc3339, wait_until

__all__ = ["DR", "JobRun", "NodeAgent", "rfc3339", "wait_until"]
