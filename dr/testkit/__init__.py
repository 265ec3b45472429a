"""Test and demo support only — never used by dr's commands.

The Kubernetes test cluster (``../shared/testcluster``) is a real API server
with no controllers and no kubelet. ``dr.testkit.agent.NodeAgent`` emulates
the node and the controllers dr relies on (Job controller + kubelet for dr's
own image, PV and snapshot controllers, workload status) for such a
throw-away cluster, so that dr's unchanged orchestration code can run end to
end in the test suite and in ``python -m dr.demo``. ``dr.testkit.cluster``
installs what that cluster lacks (the CSI snapshot CRDs, a storage class and
a snapshot class served by the agent). Nothing in ``dr.cli``, ``dr.backup``,
``dr.restore`` or ``dr.drill`` imports this package.
"""
