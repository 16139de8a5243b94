{{/* Chart name, truncated to 63 chars (DNS label). */}}
{{- define "plate-bot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. Components append a suffix, so keep room for it (max 63). */}}
{{- define "plate-bot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "plate-bot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "plate-bot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plate-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "plate-bot.labels" -}}
helm.sh/chart: {{ include "plate-bot.chart" . }}
{{ include "plate-bot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: plate-bot
{{- end }}

{{/* Labels of one component. Call with (dict "ctx" $ "component" "serve"). */}}
{{- define "plate-bot.componentLabels" -}}
{{ include "plate-bot.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "plate-bot.componentSelectorLabels" -}}
{{ include "plate-bot.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "plate-bot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "plate-bot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "plate-bot.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "plate-bot.slackSecretName" -}}
{{- default (printf "%s-slack" (include "plate-bot.fullname" .)) .Values.slack.existingSecret }}
{{- end }}

{{- define "plate-bot.configMapName" -}}
{{- printf "%s-config" (include "plate-bot.fullname" .) }}
{{- end }}

{{- define "plate-bot.redisName" -}}
{{- printf "%s-redis" (include "plate-bot.fullname" .) }}
{{- end }}

{{/* True ("true") when the bundled Redis StatefulSet is rendered. */}}
{{- define "plate-bot.bundledRedis" -}}
{{- if and .Values.redis.enabled (not .Values.externalRedis.url) (not .Values.externalRedis.existingSecret) }}true{{ end }}
{{- end }}

{{/* Secret holding REDIS_URL for an external Redis (the URL may carry a password). */}}
{{- define "plate-bot.redisSecretName" -}}
{{- default (printf "%s-redis-url" (include "plate-bot.fullname" .)) .Values.externalRedis.existingSecret }}
{{- end }}

{{/*
Go duration string ("10m", "1h30m", "600s", "90") to seconds. Unset = 300 (helm's default --timeout).
*/}}
{{- define "plate-bot.durationSeconds" -}}
{{- $d := toString . | trim }}
{{- if or (eq $d "") (eq $d "<nil>") }}{{ 300 }}
{{- else if regexMatch "^[0-9]+$" $d }}{{ $d | int }}
{{- else }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(h|ms|m|s)" $d -1 }}
{{- $n := regexFind "^[0-9]+" . | int }}
{{- if hasSuffix "ms" . }}{{ $total = add $total (div $n 1000) }}
{{- else if hasSuffix "h" . }}{{ $total = add $total (mul $n 3600) }}
{{- else if hasSuffix "m" . }}{{ $total = add $total (mul $n 60) }}
{{- else }}{{ $total = add $total $n }}
{{- end }}
{{- end }}
{{- $total }}
{{- end }}
{{- end }}

{{/* Worker grace period: max(worker.terminationGracePeriodSeconds, longest helm_timeout + margin). */}}
{{- define "plate-bot.workerGracePeriod" -}}
{{- $longest := 0 }}
{{- range $name, $env := .Values.config.environments }}
{{- $s := include "plate-bot.durationSeconds" ($env.helm_timeout | default "") | int }}
{{- if gt $s $longest }}{{ $longest = $s }}{{ end }}
{{- end }}
{{- $computed := add $longest (.Values.worker.terminationGracePeriodMarginSeconds | int) }}
{{- max (.Values.worker.terminationGracePeriodSeconds | int) $computed }}
{{- end }}

{{/* Sorted, de-duplicated environment namespaces, one per line. */}}
{{- define "plate-bot.environmentNamespaces" -}}
{{- $ns := list }}
{{- range $name, $env := .Values.config.environments }}
{{- $ns = append $ns (required (printf "config.environments.%s.namespace is required" $name) $env.namespace) }}
{{- end }}
{{- $ns | uniq | sortAlpha | join "\n" }}
{{- end }}

{{- define "plate-bot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "plate-bot.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Environment shared by serve, worker and watch. */}}
{{- define "plate-bot.env" -}}
- name: SLACK_BOT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.slackSecretName" . }}
      key: slack-bot-token
- name: SLACK_SIGNING_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.slackSecretName" . }}
      key: slack-signing-secret
- name: SLACK_APP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.slackSecretName" . }}
      key: slack-app-token
      optional: true
{{- with .Values.slack.apiUrl }}
- name: SLACK_API_URL
  value: {{ . | quote }}
{{- end }}
{{- if include "plate-bot.bundledRedis" . }}
- name: REDIS_URL
  value: {{ printf "redis://%s:%d/0" (include "plate-bot.redisName" .) (.Values.redis.port | int) | quote }}
{{- else if or .Values.externalRedis.url .Values.externalRedis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.redisSecretName" . }}
      key: {{ if .Values.externalRedis.existingSecret }}{{ .Values.externalRedis.existingSecretKey }}{{ else }}redis-url{{ end }}
{{- end }}
- name: PLATE_CONFIG
  value: /etc/plate/environments.yaml
- name: HELM_BIN
  value: /usr/local/bin/helm
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- if .Values.kubeconfig.existingSecret }}
- name: KUBECONFIG
  value: /etc/plate/kube/config
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "plate-bot.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: config
  mountPath: /etc/plate/environments.yaml
  subPath: environments.yaml
  readOnly: true
{{- if .Values.kubeconfig.existingSecret }}
- name: kubeconfig
  mountPath: /etc/plate/kube
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "plate-bot.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
- name: config
  configMap:
    name: {{ include "plate-bot.configMapName" . }}
{{- if .Values.kubeconfig.existingSecret }}
- name: kubeconfig
  secret:
    secretName: {{ .Values.kubeconfig.existingSecret }}
    items:
      - key: {{ .Values.kubeconfig.key }}
        path: config
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by serve, worker and watch (scheduling, SA, security). */}}
{{- define "plate-bot.podCommon" -}}
serviceAccountName: {{ include "plate-bot.serviceAccountName" . }}
enableServiceLinks: false
securityContext:
  {{- include "plate-bot.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "plate-bot.volumes" . | nindent 2 }}
{{- end }}

{{/* Pod template annotations: config checksum + user annotations. */}}
{{- define "plate-bot.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.slack.existingSecret }}
checksum/slack-secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
