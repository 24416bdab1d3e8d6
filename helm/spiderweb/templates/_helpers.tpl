{{/* Prefix of every object name. */}}
{{- define "spiderweb.prefix" -}}
{{- default "spiderweb" .Values.global.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of a component's objects: spiderweb.name (dict "ctx" $ "component" "portal"). */}}
{{- define "spiderweb.name" -}}
{{- printf "%s-%s" (include "spiderweb.prefix" .ctx) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "spiderweb.labels" -}}
app.kubernetes.io/name: spiderweb
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: spiderweb.selectorLabels (dict "ctx" $ "component" "portal"). */}}
{{- define "spiderweb.selectorLabels" -}}
app.kubernetes.io/name: spiderweb
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full labels of one component. */}}
{{- define "spiderweb.componentLabels" -}}
{{ include "spiderweb.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* "annotations:" block with global.commonAnnotations, or nothing. */}}
{{- define "spiderweb.annotations" -}}
{{- with .Values.global.commonAnnotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The one image every component runs. */}}
{{- define "spiderweb.image" -}}
{{- $img := .Values.spiderweb.image -}}
{{- $repo := $img.repository -}}
{{- with .Values.global.imageRegistryOverride }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end -}}
{{- if $img.digest -}}
{{ printf "%s@%s" $repo $img.digest }}
{{- else -}}
{{ printf "%s:%s" $repo (default .Chart.AppVersion $img.tag) }}
{{- end -}}
{{- end -}}

{{- define "spiderweb.envSecretName" -}}
{{- default (include "spiderweb.name" (dict "ctx" . "component" "env")) .Values.spiderweb.existingSecret -}}
{{- end -}}

{{- define "spiderweb.portalHost" -}}
{{- printf "%s.%s.svc" (include "spiderweb.name" (dict "ctx" . "component" "portal")) .Release.Namespace -}}
{{- end -}}

{{- define "spiderweb.webhookHost" -}}
{{- printf "%s.%s.svc" (include "spiderweb.name" (dict "ctx" . "component" "webhook")) .Release.Namespace -}}
{{- end -}}

{{/* Where conf.yml is mounted: Spiderpool's own path, so tooling that knows Spiderpool finds it. */}}
{{- define "spiderweb.confDir" -}}/tmp/spiderpool/config-map{{- end -}}

{{/* Environment shared by the portal, the workers, beat and the watcher. */}}
{{- define "spiderweb.controlEnv" -}}
- name: SPIDERWEB_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "spiderweb.envSecretName" . }}
      key: SPIDERWEB_SECRET_KEY
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "spiderweb.envSecretName" . }}
      key: DATABASE_URL
- name: CELERY_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "spiderweb.envSecretName" . }}
      key: CELERY_BROKER_URL
- name: SPIDERWEB_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: SPIDERWEB_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: SPIDERWEB_CONFIG_PATH
  value: {{ include "spiderweb.confDir" . }}/conf.yml
- name: SPIDERWEB_LOG_LEVEL
  value: {{ .Values.spiderweb.logLevel | quote }}
- name: SPIDERPOOL_COORDINATOR_ENABLED
  value: {{ .Values.coordinator.enabled | quote }}
- name: SPIDERPOOL_COORDINATOR_DEAFULT_NAME
  value: {{ .Values.coordinator.name | quote }}
- name: SPIDERPOOL_MULTUS_CONFIG_ENABLED
  value: {{ .Values.multus.enableMultusConfig | quote }}
- name: SPIDERWEB_STATE_DIR
  value: /tmp/spiderweb
- name: TMPDIR
  value: /tmp/spiderweb
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: PYTHONUNBUFFERED
  value: "1"
{{- $portal := include "spiderweb.name" (dict "ctx" . "component" "portal") }}
{{- $webhook := include "spiderweb.name" (dict "ctx" . "component" "webhook") }}
{{- $hosts := list }}
{{- range $svc := list $portal $webhook }}
{{- $hosts = concat $hosts (list $svc (printf "%s.%s" $svc $.Release.Namespace) (printf "%s.%s.svc" $svc $.Release.Namespace) (printf "%s.%s.svc.%s" $svc $.Release.Namespace $.Values.global.clusterDnsDomain)) }}
{{- end }}
{{- $hosts = concat $hosts .Values.spiderweb.allowedHosts (list "localhost" "127.0.0.1") }}
- name: SPIDERWEB_ALLOWED_HOSTS
  value: {{ join "," $hosts | quote }}
{{- with .Values.spiderweb.csrfTrustedOrigins }}
- name: SPIDERWEB_CSRF_TRUSTED_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
{{- end -}}

{{/* Spiderpool's GC switches (spec §7.1), passed under Spiderpool's environment names. */}}
{{- define "spiderweb.gcEnv" -}}
{{- $gc := .Values.ipam.gc -}}
- name: SPIDERPOOL_GC_IP_ENABLED
  value: {{ $gc.enabled | quote }}
- name: SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED
  value: {{ $gc.statelessPod.zombieOnReadyNode | quote }}
- name: SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_NOT_READY_NODE_ENABLED
  value: {{ $gc.statelessPod.zombieOnNotReadyNode | quote }}
- name: SPIDERPOOL_GC_ENABLE_STATELESS_RUNNING_POD_ON_EMPTY_POD_STATUS_IPS
  value: {{ $gc.statelessPod.enableGcRunningPodOnEmptyPodStatusIPs | quote }}
- name: SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY
  value: {{ $gc.gcDeletingTimeOutPodDelay | quote }}
- name: SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION
  value: {{ $gc.gcAll.intervalInSecond | quote }}
{{- end -}}

{{/* Volumes every control-plane pod mounts: conf.yml and a writable /tmp (the root filesystem is read-only). */}}
{{- define "spiderweb.controlVolumes" -}}
- name: config
  configMap:
    name: {{ .Values.global.configName }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "spiderweb.controlVolumeMounts" -}}
- name: config
  mountPath: {{ include "spiderweb.confDir" . }}
  readOnly: true
- name: tmp
  mountPath: /tmp/spiderweb
{{- end -}}

{{- define "spiderweb.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.spiderweb.podSecurityContext | nindent 2 }}
{{- with .Values.spiderweb.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Kinds with admission webhooks and the validating operations Spiderpool registers (spec §12.4). Spiderpool has
     no webhook for SpiderEndpoint (only Spiderweb itself writes them), so neither do we. */}}
{{- define "spiderweb.webhookKinds" -}}
spiderippool:
  resource: spiderippools
  validateOps: [CREATE, UPDATE, DELETE]
spidersubnet:
  resource: spidersubnets
  validateOps: [CREATE, UPDATE, DELETE]
spiderreservedip:
  resource: spiderreservedips
  validateOps: [CREATE, UPDATE]
spidercoordinator:
  resource: spidercoordinators
  validateOps: [CREATE, UPDATE]
spidermultusconfig:
  resource: spidermultusconfigs
  validateOps: [CREATE, UPDATE]
{{- end -}}
