{{/* Chart name, overridable so two copies can live in one namespace. */}}
{{- define "plate-web.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. A release already named like the chart (the usual `plate-web`) is not
doubled into `plate-web-plate-web`. Truncated to 63 chars: DNS label limit.
*/}}
{{- define "plate-web.fullname" -}}
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
{{- define "plate-web.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: immutable on a Deployment, so keep them to name + instance. */}}
{{- define "plate-web.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plate-web.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "plate-web.labels" -}}
helm.sh/chart: {{ include "plate-web.chart" . }}
{{ include "plate-web.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | quote }}
app.kubernetes.io/component: web
app.kubernetes.io/part-of: plate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "plate-web.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "plate-web.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "plate-web.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}
