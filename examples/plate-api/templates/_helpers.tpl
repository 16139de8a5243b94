{{/* Chart name, overridable so two copies can live in one namespace. */}}
{{- define "plate-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. A release already named like the chart (the usual `plate-api`) is not
doubled into `plate-api-plate-api`. Truncated to 63 chars: DNS label limit.
*/}}
{{- define "plate-api.fullname" -}}
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

{{/* name-version with "+" replaced: label values cannot contain "+". */}}
{{- define "plate-api.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: immutable on a Deployment, so keep them to name + instance. */}}
{{- define "plate-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plate-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "plate-api.labels" -}}
helm.sh/chart: {{ include "plate-api.chart" . }}
{{ include "plate-api.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | quote }}
app.kubernetes.io/component: api
app.kubernetes.io/part-of: plate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "plate-api.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
