{{/* Chart name, overridable. */}}
{{- define "clb-ingress.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of every object: <release>-<chart>, or the release name when it contains the chart name. */}}
{{- define "clb-ingress.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "clb-ingress.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clb-ingress.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clb-ingress.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "clb-ingress.labels" -}}
helm.sh/chart: {{ include "clb-ingress.chart" . }}
{{ include "clb-ingress.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "clb-ingress.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "clb-ingress.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "clb-ingress.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "clb-ingress.parametersName" -}}
{{- default .Values.ingressClass.name .Values.ingressClass.parameters.name }}
{{- end }}

{{/* Rules on namespaced kinds: in the ClusterRole, or in a Role in controller.watchNamespace. */}}
{{- define "clb-ingress.namespacedRules" -}}
# Ingresses: watched (list/watch); finalizer and sync-state annotation (patch).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["list", "watch", "patch"]
# Ingress status.loadBalancer (the CLB's VIP or domain).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["patch"]
# Backends: Services and their EndpointSlices (watched).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
# TLS Secrets: read only. Watched metadata-only (list/watch); a Secret's data is read (get)
# only when an Ingress or class parameters reference it.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
{{- if .Values.controller.readinessGates }}
# Readiness gates: pods labelled clb-ingress.io/readiness-gate=true (watched), and their
# clb-ingress.io/target-healthy condition (patch).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
{{- end }}
# Backend settings (ClbBackendConfig) named by Services and Ingress paths (watched).
- apiGroups: ["clb-ingress.io"]
  resources: ["clbbackendconfigs"]
  verbs: ["list", "watch"]
{{- if .Values.controller.tkeServiceConfigs }}
# TKE's TkeServiceConfigs (--tke-service-configs), watched, never written.
- apiGroups: ["cloud.tencent.com"]
  resources: ["tkeserviceconfigs"]
  verbs: ["list", "watch"]
{{- end }}
{{- if .Values.gatewayAPI.enabled }}
# Gateway API (--gateway-api): Gateways, routes and ReferenceGrants watched; the status of
# Gateways and of routes attached to them written (status patch).
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways", "httproutes", "grpcroutes", "referencegrants"]
  verbs: ["list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways/status", "httproutes/status", "grpcroutes/status"]
  verbs: ["patch"]
{{- end }}
# Events about Ingresses, Gateways and routes (a repeated Event is patched to count up).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
