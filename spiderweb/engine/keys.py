"""Every Spiderpool annotation and label key Spiderweb reads or writes, spelled exactly as Spiderpool spells them
(spec §2). One home per key: every module imports it from here.
"""

# Pod annotations (spec §2.1), read from the pod (the agent) or the workload's pod template (the controller).
ANNO_IPPOOL = "ipam.spidernet.io/ippool"
ANNO_IPPOOLS = "ipam.spidernet.io/ippools"
ANNO_SUBNET = "ipam.spidernet.io/subnet"
ANNO_SUBNETS = "ipam.spidernet.io/subnets"
ANNO_IPPOOL_IP_NUMBER = "ipam.spidernet.io/ippool-ip-number"
ANNO_IPPOOL_RECLAIM = "ipam.spidernet.io/ippool-reclaim"
ANNO_ROUTES = "ipam.spidernet.io/routes"
ANNO_DEFAULT_ROUTE_NIC = "ipam.spidernet.io/default-route-nic"

# Namespace annotations (spec §2.2).
ANNO_NAMESPACE_DEFAULT_POOL = {4: "ipam.spidernet.io/default-ipv4-ippool", 6: "ipam.spidernet.io/default-ipv6-ippool"}

# Pod resource injection (spec §2.2, §2.3, §10.5): on pods or namespaces, and copied as labels onto SMCs.
ANNO_RDMA_RESOURCE_INJECT = "cni.spidernet.io/rdma-resource-inject"
ANNO_NETWORK_RESOURCE_INJECT = "cni.spidernet.io/network-resource-inject"

# SpiderMultusConfig annotations (spec §2.3).
ANNO_SMC_CR_NAME = "multus.spidernet.io/cr-name"
ANNO_SMC_CNI_VERSION = "multus.spidernet.io/cni-version"
ANNO_SMC_CNICONFIG_NAME = "cni.spidernet.io/cniconfig-name"

# Multus (spec §2.1).
ANNO_MULTUS_DEFAULT_NETWORK = "v1.multus-cni.io/default-network"
ANNO_MULTUS_NETWORKS = "k8s.v1.cni.cncf.io/networks"
ANNO_MULTUS_RESOURCE_NAME = "k8s.v1.cni.cncf.io/resourceName"  # on a NAD: the device-plugin resource it needs

# System labels (spec §2.4).
LABEL_IPPOOL_CIDR = "ipam.spidernet.io/ippool-cidr"
LABEL_SUBNET_CIDR = "ipam.spidernet.io/subnet-cidr"
LABEL_OWNER_SUBNET = "ipam.spidernet.io/owner-spider-subnet"
LABEL_OWNER_APP_GV = "ipam.spidernet.io/owner-application-gv"
LABEL_OWNER_APP_KIND = "ipam.spidernet.io/owner-application-kind"
LABEL_OWNER_APP_NAMESPACE = "ipam.spidernet.io/owner-application-namespace"
LABEL_OWNER_APP_NAME = "ipam.spidernet.io/owner-application-name"
LABEL_OWNER_APP_UID = "ipam.spidernet.io/owner-application-uid"
LABEL_INTERFACE = "ipam.spidernet.io/interface"
LABEL_IP_VERSION = "ipam.spidernet.io/ip-version"
LABEL_IPPOOL_RECLAIM = "ipam.spidernet.io/ippool-reclaim"

# An auto pool's spec.podAffinity.matchLabels: the application's identity (matched against the top controller).
APP_API_GROUP = "ipam.spidernet.io/app-api-group"
APP_API_VERSION = "ipam.spidernet.io/app-api-version"
APP_KIND = "ipam.spidernet.io/app-kind"
APP_NAMESPACE = "ipam.spidernet.io/app-namespace"
APP_NAME = "ipam.spidernet.io/app-name"
AUTO_POOL_LABELS = (APP_API_GROUP, APP_API_VERSION, APP_KIND, APP_NAMESPACE, APP_NAME)
