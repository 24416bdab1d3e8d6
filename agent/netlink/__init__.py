"""All of the node agent's kernel networking work; the only package of Spiderweb that speaks netlink.

Modules: ``coordinator`` (+ ``coordinator_config``) for the coordinator meta-plugin, ``detection`` for IP conflict /
gateway probes and announcements, ``ifacer`` for VLAN and bond parents, ``sysctl`` for kernel parameters,
``netns_thread`` for running code inside another network namespace, ``rtnl`` (typed helpers) over ``wire``
(rtnetlink messages on a plain socket) for what every pod ADD and DEL does; the ifacer alone uses pyroute2.
Functions take every input as an explicit parameter: nothing here reads the environment or global configuration.
"""
