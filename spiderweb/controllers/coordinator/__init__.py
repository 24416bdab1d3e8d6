"""SpiderCoordinator status: the controller that discovers the cluster's pod and service CIDRs (spec §8.7)."""
