"""SpiderSubnet auto pools: the application controller that sizes each workload's pools to its replicas."""
