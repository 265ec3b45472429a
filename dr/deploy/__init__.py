"""Running dr in the cluster: RBAC, CronJobs and network policies (``dr deploy render``), policy checks."""
