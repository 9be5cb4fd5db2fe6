{{/* Names, labels and the pieces every workload shares. */}}

{{- define "ordo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ordo.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "order-service") */}}
{{- define "ordo.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ordo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ordo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ordo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ordo.secretName" -}}
{{- default (printf "%s-env" (include "ordo.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* The URLs the chart's Secret holds. */}}
{{- define "ordo.orderServiceDatabaseUrl" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "postgres://postgres:%s@%s-postgresql:5432/ordo%s" .Values.postgresql.password (include "ordo.fullname" .) (include "ordo.postgresqlUrlParams" .) -}}
{{- else -}}
{{- .Values.externalDatabase.orderServiceUrl -}}
{{- end -}}
{{- end -}}

{{- define "ordo.processorDatabaseUrl" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "postgres://postgres:%s@%s-postgresql:5432/ordo_processor%s" .Values.postgresql.password (include "ordo.fullname" .) (include "ordo.postgresqlUrlParams" .) -}}
{{- else -}}
{{- .Values.externalDatabase.processorUrl -}}
{{- end -}}
{{- end -}}

{{- define "ordo.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "%s://%s-nats:4222" (ternary "tls" "nats" .Values.nats.tls.enabled) (include "ordo.fullname" .) -}}
{{- else -}}
{{- .Values.externalNats.url -}}
{{- end -}}
{{- end -}}

{{- define "ordo.otlpEndpoint" -}}
{{- if .Values.otlp.endpoint -}}
{{- .Values.otlp.endpoint -}}
{{- else if .Values.jaeger.enabled -}}
{{- printf "http://%s-jaeger:4317" (include "ordo.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "ordo.streamReplicas" -}}
{{- if and .Values.nats.enabled (eq (int .Values.nats.replicas) 3) -}}3{{- else -}}{{ .Values.stream.replicas }}{{- end -}}
{{- end -}}

{{- define "ordo.paymentsUrl" -}}
{{- if .Values.processor.paymentsUrl -}}
{{- .Values.processor.paymentsUrl -}}
{{- else -}}
{{- printf "%s://%s-payments-sim:%v" (ternary "https" "http" .Values.tls.grpc.enabled) (include "ordo.fullname" .) .Values.paymentsSim.port -}}
{{- end -}}
{{- end -}}

{{/* The migration hook runs before install against an existing database,
     after install against the in-chart one (it starts with the release). */}}
{{- define "ordo.migrationHook" -}}
{{- if .Values.postgresql.enabled -}}post-install,pre-upgrade{{- else -}}pre-install,pre-upgrade{{- end -}}
{{- end -}}

{{/* Settings every Ordo service reads. (dict "root" $ "name" "order-service" "port" 50051 "metricsPort" 9101) */}}
{{- define "ordo.commonEnv" -}}
- name: GRPC_LISTEN_ADDR
  value: {{ printf "0.0.0.0:%v" .port | quote }}
- name: METRICS_LISTEN_ADDR
  value: {{ printf "0.0.0.0:%v" .metricsPort | quote }}
- name: LOG_FORMAT
  value: {{ .root.Values.logs.format | quote }}
- name: RUST_LOG
  value: {{ .root.Values.logs.filter | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .name | quote }}
{{- with include "ordo.otlpEndpoint" .root }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Settings of a service with an outbox relay and a database. (dict "root" $ "databaseKey" "ORDER_SERVICE_DATABASE_URL") */}}
{{- define "ordo.pipelineEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "ordo.secretName" .root }}
      key: {{ .databaseKey }}
- name: NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "ordo.secretName" .root }}
      key: NATS_URL
- name: NATS_STREAM_REPLICAS
  value: {{ include "ordo.streamReplicas" .root | quote }}
- name: OUTBOX_DEDUP_WINDOW
  value: {{ .root.Values.stream.duplicateWindow | quote }}
- name: MIGRATE
  value: {{ (or (not .root.Values.migrations.enabled) .root.Values.postgresql.enabled) | toString | quote }}
{{- end -}}

{{/* Probes on grpc.health.v1: liveness asks "ordo.liveness" (SERVING while
     the process runs), readiness asks "" (SERVING while it can take work).
     With tls.grpc on they are TCP connects to the gRPC port instead: the
     kubelet's gRPC probe speaks plaintext only, and the distroless image
     has no grpc_health_probe to exec. A TCP probe knows the process
     listens, not whether its dependencies are up: a NOT_SERVING pod then
     stays in the Service. (dict "port" 50051 "tls" true) */}}
{{- define "ordo.probes" -}}
{{- if .tls -}}
startupProbe:
  tcpSocket:
    port: {{ .port }}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  tcpSocket:
    port: {{ .port }}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  tcpSocket:
    port: {{ .port }}
  periodSeconds: 5
  failureThreshold: 2
{{- else -}}
startupProbe:
  grpc:
    port: {{ .port }}
    service: ordo.liveness
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  grpc:
    port: {{ .port }}
    service: ordo.liveness
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}
{{- end -}}

{{- define "ordo.podAnnotations" -}}
{{- if .root.Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .metricsPort | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}
