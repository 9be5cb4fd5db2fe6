{{/*
A service of Ordo: Deployment, Service, and optionally a
PodDisruptionBudget and a HorizontalPodAutoscaler.
(dict "root" $ "name" "order-service" "values" .Values.orderService
      "binary" "order-service" "env" (include ... ))
*/}}
{{- define "ordo.workload" -}}
{{- $root := .root -}}
{{- $values := .values -}}
{{- $fullname := printf "%s-%s" (include "ordo.fullname" $root) .name -}}
{{- $selector := dict "root" $root "component" .name -}}
{{- $mounts := include "ordo.secretMounts" (dict "root" $root "component" .name) | fromJsonArray -}}
{{- $pod := dict "root" $root "component" .name "values" $values "mounts" $mounts "spread" true -}}
{{- $annotations := printf "checksum/env: %s\n%s" (include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum) (include "ordo.podAnnotations" (dict "root" $root "metricsPort" $values.metricsPort) | trim) | trim -}}
{{- $chartEnv := include "ordo.commonEnv" (dict "root" $root "name" .name "port" $values.port "metricsPort" $values.metricsPort) -}}
{{- $chartEnv = printf "%s\n%s\n%s\n%s" $chartEnv (include "ordo.shutdownEnv" $root) (include "ordo.securityEnv" (dict "root" $root "component" .name) | trim) (.env | trim) -}}
{{- $volumeMounts := include "ordo.volumeMounts" $pod | trim -}}
{{- $volumes := include "ordo.volumes" $pod | trim -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "ordo.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  {{- if not (and (hasKey $values "autoscaling") $values.autoscaling.enabled) }}
  replicas: {{ $values.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "ordo.selector" $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "ordo.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .name }}
        {{- with include "ordo.podLabels" $pod }}
        {{- . | nindent 8 }}
        {{- end }}
      annotations:
        {{- $annotations | nindent 8 }}
        {{- with include "ordo.podAnnotations.extra" (merge (dict "chart" $annotations) $pod) }}
        {{- . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "ordo.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ include "ordo.terminationGracePeriodSeconds" $pod }}
      {{- with include "ordo.podScheduling" $pod | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "ordo.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["/usr/local/bin/{{ .binary }}"]
          ports:
            - name: grpc
              containerPort: {{ $values.port }}
              protocol: TCP
            - name: metrics
              containerPort: {{ $values.metricsPort }}
              protocol: TCP
          env:
            {{- include "ordo.env" (merge (dict "chart" $chartEnv) $pod) | nindent 12 }}
          {{- with $values.extraEnvFrom }}
          envFrom:
            {{- tpl (toYaml .) $root | nindent 12 }}
          {{- end }}
          {{- include "ordo.probes" (dict "port" $values.port "tls" $root.Values.tls.grpc.enabled) | nindent 10 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          {{- with $volumeMounts }}
          volumeMounts:
            {{- . | nindent 12 }}
          {{- end }}
      {{- with $volumes }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "ordo.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  selector:
    {{- include "ordo.selector" $selector | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $values.port }}
      targetPort: grpc
      appProtocol: grpc
    - name: metrics
      port: {{ $values.metricsPort }}
      targetPort: metrics
{{- if and (hasKey $values "podDisruptionBudget") $values.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "ordo.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  minAvailable: {{ $values.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels:
      {{- include "ordo.selector" $selector | nindent 6 }}
{{- end }}
{{- if and (hasKey $values "autoscaling") $values.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "ordo.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $fullname }}
  minReplicas: {{ $values.autoscaling.minReplicas }}
  maxReplicas: {{ $values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $values.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- end -}}
