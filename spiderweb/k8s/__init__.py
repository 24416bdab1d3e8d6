"""The only package of Spiderweb that talks to the Kubernetes API (and imports ``kubernetes``). Never imports Django.

``client`` builds an API client (kubeconfig or in-cluster), reads objects as plain JSON dicts and maps API failures
to Spiderweb's errors (``KubeUnavailable`` is transient, ``KubeError`` is not); ``pods`` holds the pure rules the node
agent applies to those dicts (pod liveness, top controller, StatefulSet and KubeVirt validity, pod facts). Rules are
kept on plain dicts so they are testable without an API server, and every API call lives here so the rest of the
code base stays free of the client library.
"""
