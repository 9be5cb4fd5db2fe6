{{/*
TLS and secrets: which Secret each component mounts, where, and the
settings that point the binaries at the files. Secrets are mounted as
directories (a subPath mount never sees a rotated Secret), read-only, mode
0440, readable through the pod's fsGroup.
*/}}

{{/* The fixed paths, documented in values.yaml. */}}
{{- define "ordo.path.grpc" -}}/etc/ordo/tls/grpc{{- end -}}
{{- define "ordo.path.payments" -}}/etc/ordo/tls/payments{{- end -}}
{{- define "ordo.path.postgresql" -}}/etc/ordo/tls/postgresql{{- end -}}
{{- define "ordo.path.nats" -}}/etc/ordo/tls/nats{{- end -}}
{{- define "ordo.path.otlp" -}}/etc/ordo/tls/otlp{{- end -}}
{{- define "ordo.path.natsAuth" -}}/etc/ordo/secrets/nats{{- end -}}
{{- define "ordo.path.otlpHeaders" -}}/etc/ordo/secrets/otlp{{- end -}}

{{/* The processor calls the in-chart simulator. */}}
{{- define "ordo.paymentsInChart" -}}
{{- if not .Values.processor.paymentsUrl -}}true{{- end -}}
{{- end -}}

{{/* The Secret the processor's payments client reads; empty: none. */}}
{{- define "ordo.paymentsTlsSecret" -}}
{{- if .Values.tls.payments.existingSecret -}}
{{- .Values.tls.payments.existingSecret -}}
{{- else if and (include "ordo.paymentsInChart" .) .Values.tls.grpc.enabled -}}
{{- .Values.tls.grpc.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The processor presents a client certificate to the payment provider:
     when asked to, or when the in-chart simulator requires one. */}}
{{- define "ordo.paymentsClientCertificate" -}}
{{- if or .Values.tls.payments.clientCertificate (and (include "ordo.paymentsInChart" .) .Values.tls.grpc.clientAuth) -}}true{{- end -}}
{{- end -}}

{{/* The Secret with the CA the services check PostgreSQL against; empty: none. */}}
{{- define "ordo.postgresqlTlsSecret" -}}
{{- if .Values.tls.postgresql.existingSecret -}}
{{- .Values.tls.postgresql.existingSecret -}}
{{- else if and .Values.postgresql.enabled .Values.postgresql.tls.enabled -}}
{{- .Values.postgresql.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The in-chart PostgreSQL's sslmode; empty: the URL carries none. */}}
{{- define "ordo.sslmode" -}}
{{- if .Values.tls.postgresql.sslmode -}}
{{- .Values.tls.postgresql.sslmode -}}
{{- else if and .Values.postgresql.enabled .Values.postgresql.tls.enabled -}}
verify-full
{{- end -}}
{{- end -}}

{{/* The query string the chart appends to the in-chart PostgreSQL's URLs. */}}
{{- define "ordo.postgresqlUrlParams" -}}
{{- $mode := include "ordo.sslmode" . -}}
{{- if $mode -}}
{{- $params := list (printf "sslmode=%s" $mode) -}}
{{- if and (include "ordo.postgresqlTlsSecret" .) (ne $mode "disable") -}}
{{- $params = append $params (printf "sslrootcert=%s/ca.crt" (include "ordo.path.postgresql" .)) -}}
{{- if .Values.tls.postgresql.clientCertificate -}}
{{- $params = append $params (printf "sslcert=%s/tls.crt" (include "ordo.path.postgresql" .)) -}}
{{- $params = append $params (printf "sslkey=%s/tls.key" (include "ordo.path.postgresql" .)) -}}
{{- end -}}
{{- end -}}
{{- printf "?%s" (join "&" $params) -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the CA the services check NATS against; empty: none. */}}
{{- define "ordo.natsTlsSecret" -}}
{{- if .Values.tls.nats.existingSecret -}}
{{- .Values.tls.nats.existingSecret -}}
{{- else if and .Values.nats.enabled .Values.nats.tls.enabled -}}
{{- .Values.nats.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The file natsAuth's method mounts, and the variable that names it. */}}
{{- define "ordo.natsAuthFile" -}}
{{- $files := dict "creds" "nats.creds" "nkey" "nkey.seed" "userPassword" "password" "token" "token" -}}
{{- get $files .Values.natsAuth.method -}}
{{- end -}}
{{- define "ordo.natsAuthVariable" -}}
{{- $variables := dict "creds" "NATS_CREDS_FILE" "nkey" "NATS_NKEY_SEED_FILE" "userPassword" "NATS_PASSWORD_FILE" "token" "NATS_TOKEN_FILE" -}}
{{- get $variables .Values.natsAuth.method -}}
{{- end -}}

{{/* One Secret volume, as JSON: (dict "name" "grpc-tls" "secret" "…" "path" "/etc/…"
     "keys" (list "tls.crt" …)) projects keys under their own names, "items"
     (list (dict "key" "NATS_TOKEN" "path" "token")) under the file's name. */}}
{{- define "ordo.secretMount" -}}
{{- $items := list -}}
{{- range .keys -}}
{{- $items = append $items (dict "key" . "path" .) -}}
{{- end -}}
{{- dict "name" .name "secret" .secret "path" .path "items" (concat $items (default (list) .items)) | toJson -}}
{{- end -}}

{{/* The Secrets a component mounts, as a JSON list. (dict "root" $ "component" "processor");
     components: order-service, processor, payments-sim, migrations. */}}
{{- define "ordo.secretMounts" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $service := has .component (list "order-service" "processor" "payments-sim") -}}
{{- $pipeline := has .component (list "order-service" "processor") -}}
{{- $mounts := list -}}
{{- if and $service $v.tls.grpc.enabled -}}
{{- $keys := list "tls.crt" "tls.key" -}}
{{- if $v.tls.grpc.clientAuth -}}{{- $keys = append $keys "ca.crt" -}}{{- end -}}
{{- $mounts = append $mounts (include "ordo.secretMount" (dict "name" "grpc-tls" "secret" $v.tls.grpc.existingSecret "path" (include "ordo.path.grpc" $root) "keys" $keys) | fromJson) -}}
{{- end -}}
{{- if and (eq .component "processor") (include "ordo.paymentsTlsSecret" $root) -}}
{{- $keys := list "ca.crt" -}}
{{- if include "ordo.paymentsClientCertificate" $root -}}{{- $keys = concat $keys (list "tls.crt" "tls.key") -}}{{- end -}}
{{- $mounts = append $mounts (include "ordo.secretMount" (dict "name" "payments-tls" "secret" (include "ordo.paymentsTlsSecret" $root) "path" (include "ordo.path.payments" $root) "keys" $keys) | fromJson) -}}
{{- end -}}
{{- if and (or $pipeline (eq .component "migrations")) (include "ordo.postgresqlTlsSecret" $root) -}}
{{- $keys := list "ca.crt" -}}
{{- if $v.tls.postgresql.clientCertificate -}}{{- $keys = concat $keys (list "tls.crt" "tls.key") -}}{{- end -}}
{{- $mounts = append $mounts (include "ordo.secretMount" (dict "name" "postgresql-tls" "secret" (include "ordo.postgresqlTlsSecret" $root) "path" (include "ordo.path.postgresql" $root) "keys" $keys) | fromJson) -}}
{{- end -}}
{{- if and $pipeline (include "ordo.natsTlsSecret" $root) -}}
{{- $keys := list "ca.crt" -}}
{{- if $v.tls.nats.clientCertificate -}}{{- $keys = concat $keys (list "tls.crt" "tls.key") -}}{{- end -}}
{{- $mounts = append $mounts (include "ordo.secretMount" (dict "name" "nats-tls" "secret" (include "ordo.natsTlsSecret" $root) "path" (include "ordo.path.nats" $root) "keys" $keys) | fromJson) -}}
{{- end -}}
{{- if and $pipeline $v.natsAuth.method -}}
{{- $file := include "ordo.natsAuthFile" $root -}}
{{- $item := dict "key" (default $file $v.natsAuth.key) "path" $file -}}
{{- $mounts = append $mounts (include "ordo.secretMount" (dict "name" "nats-auth" "secret" $v.natsAuth.existingSecret "path" (include "ordo.path.natsAuth" $root) "items" (list $item)) | fromJson) -}}
{{- end -}}
{{- if and $service $v.tls.otlp.existingSecret -}}
{{- $keys := list "ca.crt" -}}
{{- if $v.tls.otlp.clientCertificate -}}{{- $keys = concat $keys (list "tls.crt" "tls.key") -}}{{- end -}}
{{- $mounts = append $mounts (include "ordo.secretMount" (dict "name" "otlp-tls" "secret" $v.tls.otlp.existingSecret "path" (include "ordo.path.otlp" $root) "keys" $keys) | fromJson) -}}
{{- end -}}
{{- if and $service $v.otlp.headersSecret.name -}}
{{- $item := dict "key" $v.otlp.headersSecret.key "path" "headers" -}}
{{- $mounts = append $mounts (include "ordo.secretMount" (dict "name" "otlp-headers" "secret" $v.otlp.headersSecret.name "path" (include "ordo.path.otlpHeaders" $root) "items" (list $item)) | fromJson) -}}
{{- end -}}
{{- toJson $mounts -}}
{{- end -}}

{{/* volumeMounts and volumes of a list from ordo.secretMounts. */}}
{{- define "ordo.secretVolumeMounts" -}}
{{- range . }}
- name: {{ .name }}
  mountPath: {{ .path }}
  readOnly: true
{{- end }}
{{- end -}}
{{- define "ordo.secretVolumes" -}}
{{- range . }}
- name: {{ .name }}
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      {{- range .items }}
      - key: {{ .key }}
        path: {{ .path }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* The settings naming the mounted files. (dict "root" $ "component" "processor") */}}
{{- define "ordo.securityEnv" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $pipeline := has .component (list "order-service" "processor") -}}
{{- if $v.tls.grpc.enabled }}
- name: GRPC_TLS_CERT_FILE
  value: {{ include "ordo.path.grpc" $root }}/tls.crt
- name: GRPC_TLS_KEY_FILE
  value: {{ include "ordo.path.grpc" $root }}/tls.key
{{- if $v.tls.grpc.clientAuth }}
- name: GRPC_TLS_CLIENT_CA_FILE
  value: {{ include "ordo.path.grpc" $root }}/ca.crt
{{- end }}
- name: GRPC_TLS_RELOAD_INTERVAL
  value: {{ $v.tls.grpc.reloadInterval | quote }}
{{- end }}
{{- if and (eq .component "processor") (include "ordo.paymentsTlsSecret" $root) }}
- name: PAYMENTS_TLS_CA_FILE
  value: {{ include "ordo.path.payments" $root }}/ca.crt
{{- if include "ordo.paymentsClientCertificate" $root }}
- name: PAYMENTS_TLS_CERT_FILE
  value: {{ include "ordo.path.payments" $root }}/tls.crt
- name: PAYMENTS_TLS_KEY_FILE
  value: {{ include "ordo.path.payments" $root }}/tls.key
{{- end }}
{{- end }}
{{- if and (eq .component "processor") $v.tls.payments.serverName }}
- name: PAYMENTS_TLS_SERVER_NAME
  value: {{ $v.tls.payments.serverName | quote }}
{{- end }}
{{- if and $pipeline (include "ordo.natsTlsSecret" $root) }}
- name: NATS_TLS_CA_FILE
  value: {{ include "ordo.path.nats" $root }}/ca.crt
{{- if $v.tls.nats.clientCertificate }}
- name: NATS_TLS_CERT_FILE
  value: {{ include "ordo.path.nats" $root }}/tls.crt
- name: NATS_TLS_KEY_FILE
  value: {{ include "ordo.path.nats" $root }}/tls.key
{{- end }}
{{- end }}
{{- if and $pipeline $v.natsAuth.method }}
{{- if eq $v.natsAuth.method "userPassword" }}
- name: NATS_USER
  value: {{ $v.natsAuth.user | quote }}
{{- end }}
- name: {{ include "ordo.natsAuthVariable" $root }}
  value: {{ include "ordo.path.natsAuth" $root }}/{{ include "ordo.natsAuthFile" $root }}
{{- end }}
{{- if $v.tls.otlp.existingSecret }}
- name: OTEL_EXPORTER_OTLP_CERTIFICATE
  value: {{ include "ordo.path.otlp" $root }}/ca.crt
{{- if $v.tls.otlp.clientCertificate }}
- name: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
  value: {{ include "ordo.path.otlp" $root }}/tls.crt
- name: OTEL_EXPORTER_OTLP_CLIENT_KEY
  value: {{ include "ordo.path.otlp" $root }}/tls.key
{{- end }}
{{- end }}
{{- if $v.otlp.headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS_FILE
  value: {{ include "ordo.path.otlpHeaders" $root }}/headers
{{- end }}
{{- end -}}

{{/* An admin token from the chart's Secret (or existingSecret), if any. (dict "root" $ "key" "PROCESSOR_ADMIN_TOKEN" "value" .Values.adminToken) */}}
{{- define "ordo.adminTokenEnv" -}}
{{- if or .value .root.Values.existingSecret }}
- name: {{ .key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "ordo.secretName" .root }}
      key: {{ .key }}
      optional: true
{{- end }}
{{- end -}}

{{/* Combinations the schema cannot see across sections: each refused with
     the value to change. */}}
{{- define "ordo.validate" -}}
{{- $v := .Values -}}
{{- if and $v.postgresql.tls.enabled (not $v.postgresql.enabled) -}}
{{- fail "postgresql.tls configures the in-chart PostgreSQL (postgresql.enabled); for your own server use tls.postgresql and sslmode in the externalDatabase URLs" -}}
{{- end -}}
{{- if and $v.nats.tls.enabled (not $v.nats.enabled) -}}
{{- fail "nats.tls configures the in-chart NATS (nats.enabled); for your own server use tls.nats and a tls:// externalNats.url" -}}
{{- end -}}
{{- if and $v.tls.postgresql.sslmode (not $v.postgresql.enabled) -}}
{{- fail (printf "tls.postgresql.sslmode sets the in-chart PostgreSQL's URLs only; put sslmode (and sslrootcert=%s/ca.crt, sslcert=…/tls.crt, sslkey=…/tls.key) into the externalDatabase URLs or existingSecret" (include "ordo.path.postgresql" .)) -}}
{{- end -}}
{{- if $v.postgresql.enabled -}}
{{- $mode := include "ordo.sslmode" . -}}
{{- if and $v.postgresql.tls.enabled (eq $mode "disable") -}}
{{- fail "tls.postgresql.sslmode disable cannot reach the in-chart PostgreSQL: with postgresql.tls.enabled it refuses plaintext" -}}
{{- end -}}
{{- if and (not $v.postgresql.tls.enabled) (has $mode (list "require" "verify-ca" "verify-full")) -}}
{{- fail (printf "tls.postgresql.sslmode %s needs postgresql.tls.enabled: without it the in-chart PostgreSQL has no certificate" $mode) -}}
{{- end -}}
{{- end -}}
{{- if and $v.postgresql.enabled $v.postgresql.tls.clientAuth (not $v.tls.postgresql.clientCertificate) -}}
{{- fail "postgresql.tls.clientAuth asks the services for a certificate: set tls.postgresql.existingSecret (tls.crt, tls.key, ca.crt) and tls.postgresql.clientCertificate" -}}
{{- end -}}
{{- if and $v.nats.enabled $v.nats.tls.clientAuth (not $v.tls.nats.clientCertificate) -}}
{{- fail "nats.tls.clientAuth asks the services for a certificate: set tls.nats.existingSecret (tls.crt, tls.key, ca.crt) and tls.nats.clientCertificate" -}}
{{- end -}}
{{- if and $v.nats.enabled $v.natsAuth.method -}}
{{- fail "natsAuth is for your own NATS server; the in-chart NATS authenticates clients by certificate (nats.tls.clientAuth with tls.nats.clientCertificate)" -}}
{{- end -}}
{{- if and $v.nats.enabled (not $v.nats.tls.enabled) $v.tls.nats.existingSecret -}}
{{- fail "tls.nats makes the services require TLS, which the in-chart NATS speaks only with nats.tls.enabled" -}}
{{- end -}}
{{- $paymentsUrl := include "ordo.paymentsUrl" . -}}
{{- if and (or $v.tls.payments.existingSecret $v.tls.payments.clientCertificate $v.tls.payments.serverName) (hasPrefix "http://" $paymentsUrl) -}}
{{- fail (printf "tls.payments is set but the processor reaches payments at %s: use an https:// processor.paymentsUrl, or tls.grpc.enabled for the in-chart simulator" $paymentsUrl) -}}
{{- end -}}
{{- $otlpEndpoint := include "ordo.otlpEndpoint" . -}}
{{- if and $v.tls.otlp.existingSecret (not (hasPrefix "https://" $otlpEndpoint)) -}}
{{- fail (printf "tls.otlp needs an https:// otlp.endpoint, not %q" $otlpEndpoint) -}}
{{- end -}}
{{- if and $v.otlp.headersSecret.name (not $otlpEndpoint) -}}
{{- fail "otlp.headersSecret needs otlp.endpoint: with no endpoint nothing is exported" -}}
{{- end -}}
{{- $mounts := list -}}
{{- range $component := list "order-service" "processor" "payments-sim" "migrations" -}}
{{- $mounts = concat $mounts (include "ordo.secretMounts" (dict "root" $ "component" $component) | fromJsonArray) -}}
{{- end -}}
{{- if and $mounts (not $v.podSecurityContext.fsGroup) -}}
{{- fail "podSecurityContext.fsGroup is needed: mounted Secrets are mode 0440, readable by that group" -}}
{{- end -}}
{{- end -}}
