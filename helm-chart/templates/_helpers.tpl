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

{{/*
ServiceAccount of one process: (dict "ctx" $ "component" "serve"|"worker"|"watch").
Each process has its own: serve none bound (no cluster access), watch read-only Roles, worker the writes.
*/}}
{{- define "plate-bot.serviceAccountName" -}}
{{- $sa := index .ctx.Values.serviceAccount .component }}
{{- if .ctx.Values.serviceAccount.create }}
{{- default (printf "%s-%s" (include "plate-bot.fullname" .ctx) .component) $sa.name }}
{{- else }}
{{- required (printf "serviceAccount.%s.name is required when serviceAccount.create is false (each process has its own ServiceAccount)" .component) $sa.name }}
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

{{/*
serve's Service ports: the Slack port and the metrics port (/metrics, /healthz, /readyz, /scale), both
to serve's one container port. A Service may not list a port twice: equal ports are refused.
*/}}
{{- define "plate-bot.checkServePorts" -}}
{{- if eq (.Values.serve.service.port | int) (.Values.serve.service.metricsPort | int) }}
{{- fail (printf "serve.service.port and serve.service.metricsPort are both %v: a Service cannot list one port twice; give metricsPort another number (both lead to serve's container port %v)" .Values.serve.service.port .Values.serve.port) }}
{{- end }}
{{- end }}

{{/* What KEDA's metrics-api trigger reads: serve's /scale through the serve Service's metrics port. */}}
{{- define "plate-bot.scaleUrl" -}}
{{- printf "http://%s-serve.%s.svc:%d/scale" (include "plate-bot.fullname" .) .Release.Namespace (.Values.serve.service.metricsPort | int) }}
{{- end }}

{{/* Worker liveness: a restart only after a minute of failures (a Redis blip must not restart them all). */}}
{{- define "plate-bot.workerLivenessProbe" -}}
{{- $p := .Values.worker.livenessProbe }}
{{- if lt (mul ($p.failureThreshold | int) ($p.periodSeconds | int) | int) 60 }}
{{- fail (printf "worker.livenessProbe: failureThreshold × periodSeconds is %d s; at least 60 s, or a Redis blip restarts every idle worker" (mul ($p.failureThreshold | int) ($p.periodSeconds | int))) }}
{{- end }}
httpGet:
  path: /healthz
  port: metrics
periodSeconds: {{ $p.periodSeconds }}
timeoutSeconds: {{ $p.timeoutSeconds }}
failureThreshold: {{ $p.failureThreshold }}
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

{{/* Secret holding the bundled Redis' password (chart-made unless redis.auth.existingSecret). */}}
{{- define "plate-bot.redisAuthSecretName" -}}
{{- default (printf "%s-redis-auth" (include "plate-bot.fullname" .)) .Values.redis.auth.existingSecret }}
{{- end }}

{{- define "plate-bot.redisAuthSecretKey" -}}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretKey }}{{ else }}redis-password{{ end }}
{{- end }}

{{/* Secret holding PLATE_BACKUP_KEY (chart-made unless backups.encryptionKey.existingSecret). */}}
{{- define "plate-bot.backupKeySecretName" -}}
{{- default (printf "%s-backup-key" (include "plate-bot.fullname" .)) .Values.backups.encryptionKey.existingSecret }}
{{- end }}

{{- define "plate-bot.backupKeySecretKey" -}}
{{- if .Values.backups.encryptionKey.existingSecret }}{{ .Values.backups.encryptionKey.existingSecretKey }}{{ else }}backup-key{{ end }}
{{- end }}

{{/* Where the external Redis' CA bundle is mounted (externalRedis.tls.caSecret). */}}
{{- define "plate-bot.redisCAPath" -}}
/etc/plate/redis-tls/ca.crt
{{- end }}

{{/*
The chart-made external Redis URL: externalRedis.url, with ssl_ca_certs pointing at the mounted CA
bundle when externalRedis.tls.caSecret is set (redis-py's from_url passes it to the TLS connection).
*/}}
{{- define "plate-bot.externalRedisUrl" -}}
{{- $url := .Values.externalRedis.url }}
{{- if .Values.externalRedis.tls.caSecret }}
{{- if not (or (hasPrefix "rediss://" $url) (hasPrefix "rediss+sentinel://" $url)) }}
{{- fail "externalRedis.tls.caSecret is set but externalRedis.url is not a rediss:// or rediss+sentinel:// (TLS) URL" }}
{{- end }}
{{- if not (contains "ssl_ca_certs=" $url) }}
{{- $url = printf "%s%sssl_ca_certs=%s" $url (ternary "&" "?" (contains "?" $url)) (include "plate-bot.redisCAPath" .) }}
{{- end }}
{{- end }}
{{- $url }}
{{- end }}

{{/*
A duration of the environments file to seconds: (dict "value" $v "default" $seconds "where" "config.…").
The grammar is config/durations.py's DURATION_PATTERN (90s, 15m, 1h30m, 1d, or seconds; the schema has
the same pattern); unset gives "default".
*/}}
{{- define "plate-bot.durationSeconds" -}}
{{- $v := .value }}
{{- if or (kindIs "invalid" $v) (eq (toString $v) "") }}{{ .default | int }}
{{- else if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) }}{{ $v | int }}
{{- else }}
{{- $d := toString $v | trim }}
{{- if not (regexMatch "^([0-9]+|([0-9]+[smhd])+)$" $d) }}
{{- fail (printf "%s: %q is not a duration like 90s, 15m, 1h30m, 1d or seconds" .where $d) }}
{{- end }}
{{- if regexMatch "^[0-9]+$" $d }}{{ $d | int }}
{{- else }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+[smhd]" $d -1 }}
{{- $n := regexFind "^[0-9]+" . | int }}
{{- $unit := get (dict "s" 1 "m" 60 "h" 3600 "d" 86400) (regexFind "[smhd]$" .) | int }}
{{- $total = add $total (mul $n $unit) }}
{{- end }}
{{- $total }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The longest job timeout (RQ's hard limit of a job) of every app of every environment, in seconds: an
app's job timeout is helm_timeout + rollout_timeout + 300 (config/environments.py, Environment.job_timeout),
each the app's own, else its environment's, else the model's default (600, 300).
*/}}
{{- define "plate-bot.longestJobTimeout" -}}
{{- $longest := 0 }}
{{- range $name, $env := .Values.config.environments }}
{{- $where := printf "config.environments.%s" $name }}
{{- $helm := include "plate-bot.durationSeconds" (dict "value" $env.helm_timeout "default" 600 "where" (printf "%s.helm_timeout" $where)) | int }}
{{- $rollout := include "plate-bot.durationSeconds" (dict "value" $env.rollout_timeout "default" 300 "where" (printf "%s.rollout_timeout" $where)) | int }}
{{- $jobs := list (add $helm $rollout 300) }}
{{- range $app, $a := ($env.apps | default dict) }}
{{- $w := printf "%s.apps.%s" $where $app }}
{{- $h := include "plate-bot.durationSeconds" (dict "value" $a.helm_timeout "default" $helm "where" (printf "%s.helm_timeout" $w)) | int }}
{{- $r := include "plate-bot.durationSeconds" (dict "value" $a.rollout_timeout "default" $rollout "where" (printf "%s.rollout_timeout" $w)) | int }}
{{- $jobs = append $jobs (add $h $r 300) }}
{{- end }}
{{- range $jobs }}{{ if gt . $longest }}{{ $longest = . }}{{ end }}{{ end }}
{{- end }}
{{- $longest }}
{{- end }}

{{/* Worker grace period: max(worker.terminationGracePeriodSeconds, longest job timeout + margin). */}}
{{- define "plate-bot.workerGracePeriod" -}}
{{- $computed := add (include "plate-bot.longestJobTimeout" . | int) (.Values.worker.terminationGracePeriodMarginSeconds | int) }}
{{- max (.Values.worker.terminationGracePeriodSeconds | int) $computed }}
{{- end }}

{{/*
The environments whose Roles this install renders, as JSON {"names": [...]}:
  mode local   those living in this cluster: no kube_context and no kubeconfig, plus rbac.localEnvironments;
  mode target  target.environments, or every environment when it is empty.
*/}}
{{- define "plate-bot.rbacEnvironments" -}}
{{- $envs := .Values.config.environments }}
{{- $forced := .Values.rbac.localEnvironments | default list }}
{{- $wanted := .Values.target.environments | default list }}
{{- range (concat $forced $wanted) }}
{{- if not (hasKey $envs .) }}
{{- fail (printf "%s is not an environment of config.environments (rbac.localEnvironments, target.environments)" .) }}
{{- end }}
{{- end }}
{{- $names := list }}
{{- range $name, $env := $envs }}
{{- if eq $.Values.mode "target" }}
{{- if or (not $wanted) (has $name $wanted) }}{{ $names = append $names $name }}{{ end }}
{{- else if or (and (not $env.kube_context) (not $env.kubeconfig)) (has $name $forced) }}
{{- $names = append $names $name }}
{{- end }}
{{- end }}
{{- dict "names" $names | toJson }}
{{- end }}

{{/*
What each process may touch, computed from the environments of plate-bot.rbacEnvironments with the app's
own defaults (config/environments.py), as JSON (fromJson it):
  envNamespaces       the namespaces the apps live in (an app's namespace, else its environment's; worker
                      Role: writes; watch Role: reads)
  argocd              Argo CD namespace -> {apps: Applications the worker reads/patches (the environments'
                      and apps' argocd_app, the harbor-bootstrap Application), bootstrap: those
                      harbor-bootstrap creates}
  argocdWatch         Argo CD namespaces the watcher follows (every environment's argocd_namespace)
  eso                 ESO namespaces (harbor-verify lists the operator's pods)
  chain               harbor.namespace outside the app namespaces -> {secrets, serviceAccounts}
  namespaces          namespaces the worker reads by name (kube-system: cluster identity; the rest exist?)
*/}}
{{- define "plate-bot.rbacPlan" -}}
{{- $selected := (include "plate-bot.rbacEnvironments" . | fromJson).names }}
{{- $envNs := list }}
{{- range $name := $selected }}
{{- $env := index $.Values.config.environments $name }}
{{- $ns := required (printf "config.environments.%s.namespace is required" $name) $env.namespace }}
{{- if $env.apps }}
{{- range $app, $a := $env.apps }}{{ $envNs = append $envNs ($a.namespace | default $ns) }}{{ end }}
{{- else }}
{{- $envNs = append $envNs $ns }}
{{- end }}
{{- end }}
{{- $envNs = $envNs | uniq | sortAlpha }}
{{- $argocd := dict }}
{{- $argocdWatch := list }}
{{- $eso := list }}
{{- $chain := dict }}
{{- $namespaces := list "kube-system" }}
{{- range $name := $selected }}
{{- $env := index $.Values.config.environments $name }}
{{- $harbor := $env.harbor | default dict }}
{{- $argoNs := $env.argocd_namespace | default "argocd" }}
{{- $argocdWatch = append $argocdWatch $argoNs }}
{{- $entry := get $argocd $argoNs | default (dict "apps" (list) "bootstrap" (list)) }}
{{- with $env.argocd_app }}{{ $_ := set $entry "apps" (append $entry.apps .) }}{{ end }}
{{- range $app, $a := ($env.apps | default dict) }}
{{- with $a.argocd_app }}{{ $_ := set $entry "apps" (append $entry.apps .) }}{{ end }}
{{- $namespaces = append $namespaces ($a.namespace | default $env.namespace) }}
{{- end }}
{{- if $harbor.manifests_dir }}
{{- $app := $harbor.argocd_app | default "harbor-auth-eso" }}
{{- $_ := set $entry "apps" (append $entry.apps $app) }}
{{- $_ := set $entry "bootstrap" (append $entry.bootstrap $app) }}
{{- end }}
{{- $_ := set $argocd $argoNs $entry }}
{{- $esoNs := $harbor.eso_namespace | default "external-secrets-system" }}
{{- $eso = append $eso $esoNs }}
{{- $chainNs := $harbor.namespace | default $env.namespace }}
{{- $namespaces = concat $namespaces (list $env.namespace $chainNs $esoNs) ($harbor.namespaces | default (list)) }}
{{- if not (has $chainNs $envNs) }}
{{- $c := get $chain $chainNs | default (dict "secrets" (list) "serviceAccounts" (list)) }}
{{- $_ := set $c "secrets" (concat $c.secrets (list ($harbor.token_secret | default "openbao-token") ($harbor.docker_secret | default "harbor-docker-secret"))) }}
{{- $_ := set $c "serviceAccounts" (append $c.serviceAccounts ($harbor.service_account | default "harbor-secret-reader")) }}
{{- $_ := set $chain $chainNs $c }}
{{- end }}
{{- end }}
{{- range $ns, $entry := $argocd }}
{{- $_ := set $entry "apps" ($entry.apps | uniq | sortAlpha) }}
{{- $_ := set $entry "bootstrap" ($entry.bootstrap | uniq | sortAlpha) }}
{{- end }}
{{- range $ns, $c := $chain }}
{{- $_ := set $c "secrets" ($c.secrets | uniq | sortAlpha) }}
{{- $_ := set $c "serviceAccounts" ($c.serviceAccounts | uniq | sortAlpha) }}
{{- end }}
{{- dict "envNamespaces" $envNs "argocd" $argocd "argocdWatch" ($argocdWatch | uniq | sortAlpha) "eso" ($eso | uniq | sortAlpha) "chain" $chain "namespaces" ($namespaces | uniq | sortAlpha) | toJson }}
{{- end }}

{{/*
Where a cluster's kubeconfig is mounted (clusters.<name>): /etc/plate/clusters/<name>/config. An
environment's `kubeconfig` under /etc/plate/clusters/ must name a cluster of `clusters`, and
/etc/plate/kube/config needs kubeconfig.existingSecret (checked here, so a typo fails the install
rather than the first deploy).
*/}}
{{- define "plate-bot.checkKubeconfigs" -}}
{{- range $name, $env := .Values.config.environments }}
{{- with $env.kubeconfig }}
{{- $path := toString . }}
{{- if hasPrefix "/etc/plate/clusters/" $path }}
{{- $cluster := index (splitList "/" $path) 4 }}
{{- if or (not (hasKey ($.Values.clusters | default dict) $cluster)) (ne $path (printf "/etc/plate/clusters/%s/config" $cluster)) }}
{{- fail (printf "config.environments.%s.kubeconfig %s: mount it with clusters.%s (it is then /etc/plate/clusters/%s/config)" $name $path $cluster $cluster) }}
{{- end }}
{{- else if and (eq $path "/etc/plate/kube/config") (not $.Values.kubeconfig.existingSecret) }}
{{- fail (printf "config.environments.%s.kubeconfig %s needs kubeconfig.existingSecret" $name $path) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Subjects of a process' RoleBindings: (dict "ctx" $ "component" "worker"|"watch"): its ServiceAccount and
rbac.extraSubjects.<component> (the user or group a cloud identity is mapped to in a target cluster).
*/}}
{{- define "plate-bot.subjects" -}}
- kind: ServiceAccount
  name: {{ include "plate-bot.serviceAccountName" . }}
  namespace: {{ .ctx.Release.Namespace }}
{{- with index (.ctx.Values.rbac.extraSubjects | default dict) .component }}
{{ toYaml . }}
{{- end }}
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

{{/*
Environment of one process: (dict "ctx" $ "component" "serve"|"worker"|"watch").
serve gets no kubeconfig and no helm; only the worker (which takes and reads backups) gets the backup key.
*/}}
{{- define "plate-bot.env" -}}
{{- $ := .ctx }}
{{- $component := .component }}
- name: SLACK_BOT_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.slackSecretName" $ }}
      key: slack-bot-token
- name: SLACK_SIGNING_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.slackSecretName" $ }}
      key: slack-signing-secret
- name: SLACK_APP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.slackSecretName" $ }}
      key: slack-app-token
      optional: true
{{- with $.Values.slack.apiUrl }}
- name: SLACK_API_URL
  value: {{ . | quote }}
{{- end }}
{{- if include "plate-bot.bundledRedis" $ }}
# The password comes from its Secret; REDIS_URL is composed from it by the kubelet ($(VAR) expansion),
# so neither the pod spec nor the release record holds it.
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.redisAuthSecretName" $ }}
      key: {{ include "plate-bot.redisAuthSecretKey" $ }}
- name: REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:%d/0" (include "plate-bot.redisName" $) ($.Values.redis.port | int) | quote }}
{{- else if or $.Values.externalRedis.url $.Values.externalRedis.existingSecret }}
{{- with $.Values.externalRedis.passwordSecret }}
# For a URL without a password (docs/redis.md): the URL holds no secret.
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.externalRedis.passwordSecretKey }}
{{- end }}
{{- with $.Values.externalRedis.sentinelPasswordSecret }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.externalRedis.sentinelPasswordSecretKey }}
{{- end }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.redisSecretName" $ }}
      key: {{ if $.Values.externalRedis.existingSecret }}{{ $.Values.externalRedis.existingSecretKey }}{{ else }}redis-url{{ end }}
{{- end }}
- name: PLATE_CONFIG
  value: /etc/plate/environments.yaml
{{- if ne $component "serve" }}
- name: HELM_BIN
  value: /usr/local/bin/helm
{{- end }}
- name: LOG_LEVEL
  value: {{ $.Values.logLevel | quote }}
{{- if and $.Values.kubeconfig.existingSecret (ne $component "serve") }}
- name: KUBECONFIG
  value: /etc/plate/kube/config
{{- end }}
{{- if eq $component "worker" }}
{{- if $.Values.backups.enabled }}
- name: PLATE_BACKUP_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "plate-bot.backupKeySecretName" $ }}
      key: {{ include "plate-bot.backupKeySecretKey" $ }}
{{- else }}
- name: PLATE_BACKUPS
  value: "off"
{{- end }}
{{- end }}
{{- with $.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "plate-bot.volumeMounts" -}}
{{- $ := .ctx }}
- name: tmp
  mountPath: /tmp
- name: config
  mountPath: /etc/plate/environments.yaml
  subPath: environments.yaml
  readOnly: true
{{- if ne .component "serve" }}
{{- if $.Values.kubeconfig.existingSecret }}
- name: kubeconfig
  mountPath: /etc/plate/kube
  readOnly: true
{{- end }}
{{- range $name, $_ := $.Values.clusters }}
- name: cluster-{{ $name }}
  mountPath: /etc/plate/clusters/{{ $name }}
  readOnly: true
{{- end }}
{{- end }}
{{- if and (not (include "plate-bot.bundledRedis" $)) $.Values.externalRedis.tls.caSecret }}
- name: redis-tls
  mountPath: {{ dir (include "plate-bot.redisCAPath" $) }}
  readOnly: true
{{- end }}
{{- with $.Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "plate-bot.volumes" -}}
{{- $ := .ctx }}
{{- $component := .component }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
- name: config
  configMap:
    name: {{ include "plate-bot.configMapName" $ }}
{{- if ne .component "serve" }}
{{- /* Cluster credentials: worker and watch only; serve never gets any. */}}
{{- if $.Values.kubeconfig.existingSecret }}
- name: kubeconfig
  secret:
    secretName: {{ $.Values.kubeconfig.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $.Values.kubeconfig.key }}
        path: config
{{- end }}
{{- range $name, $c := $.Values.clusters }}
- name: cluster-{{ $name }}
  secret:
    {{- /* The watcher only reads: it may get a kubeconfig of its own (the target's watch ServiceAccount). */}}
    secretName: {{ ternary ($c.watchSecret | default $c.existingSecret) $c.existingSecret (eq $component "watch") }}
    defaultMode: 0440
    items:
      - key: {{ $c.key | default "config" }}
        path: config
{{- end }}
{{- end }}
{{- if and (not (include "plate-bot.bundledRedis" $)) $.Values.externalRedis.tls.caSecret }}
- name: redis-tls
  secret:
    secretName: {{ $.Values.externalRedis.tls.caSecret }}
    defaultMode: 0444
    items:
      - key: {{ $.Values.externalRedis.tls.caSecretKey }}
        path: {{ base (include "plate-bot.redisCAPath" $) }}
{{- end }}
{{- with $.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod-level fields of one process (scheduling, ServiceAccount, security): (dict "ctx" $ "component" ...).
serve talks to no Kubernetes API: no token is mounted into it.
*/}}
{{- define "plate-bot.podCommon" -}}
{{- $ := .ctx }}
serviceAccountName: {{ include "plate-bot.serviceAccountName" . }}
automountServiceAccountToken: {{ ne .component "serve" }}
enableServiceLinks: false
securityContext:
  {{- include "plate-bot.podSecurityContext" $ | nindent 2 }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.affinity }}
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

{{/*
Egress to the Kubernetes API (worker, watch) as JSON {cidrs, ports, source}:
  networkPolicy.egress.kubeApiCIDRs when set (source "values");
  else looked up at install/upgrade: the API server's endpoints (EndpointSlices of Service default/kubernetes)
  and that Service's ClusterIP (CNIs that apply policy before the Service is translated), /32 or /128
  each, plus the endpoints' ports (source "lookup");
  else (helm template, Argo CD, no right to read them) 0.0.0.0/0 on kubeApiPorts (source "fallback").
*/}}
{{- define "plate-bot.kubeApiEgress" -}}
{{- $e := .Values.networkPolicy.egress }}
{{- $ports := list }}
{{- range $e.kubeApiPorts }}{{ $ports = append $ports (int .) }}{{ end }}
{{- if $e.kubeApiCIDRs }}
{{- dict "cidrs" $e.kubeApiCIDRs "ports" $ports "source" "values" | toJson }}
{{- else }}
{{- $ips := list }}
{{- $svc := lookup "v1" "Service" "default" "kubernetes" }}
{{- with (dig "spec" "clusterIP" "" $svc) }}{{ $ips = append $ips . }}{{ end }}
{{- $slices := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "" }}
{{- range (dig "items" (list) $slices) }}
{{- if eq (dig "metadata" "labels" "kubernetes.io/service-name" "" .) "kubernetes" }}
{{- range (dig "endpoints" (list) .) }}
{{- range (dig "addresses" (list) .) }}{{ $ips = append $ips . }}{{ end }}
{{- end }}
{{- range (dig "ports" (list) .) }}{{ with (dig "port" 0 .) }}{{ $ports = append $ports (int .) }}{{ end }}{{ end }}
{{- end }}
{{- end }}
{{- $cidrs := list }}
{{- range ($ips | uniq | sortAlpha) }}
{{- $cidrs = append $cidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) }}
{{- end }}
{{- if $cidrs }}
{{- dict "cidrs" $cidrs "ports" ($ports | uniq) "source" "lookup" | toJson }}
{{- else }}
{{- dict "cidrs" (list "0.0.0.0/0") "ports" $ports "source" "fallback" | toJson }}
{{- end }}
{{- end }}
{{- end }}
