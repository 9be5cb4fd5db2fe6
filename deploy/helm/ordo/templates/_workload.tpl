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
      annotations:
        checksum/env: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- include "ordo.podAnnotations" (dict "root" $root "metricsPort" $values.metricsPort) | nindent 8 }}
    spec:
      serviceAccountName: {{ include "ordo.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 30
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
            {{- include "ordo.commonEnv" (dict "root" $root "name" .name "port" $values.port "metricsPort" $values.metricsPort) | nindent 12 }}
            {{- with include "ordo.securityEnv" (dict "root" $root "component" .name) | trim }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- .env | nindent 12 }}
            {{- range $name, $value := $values.env }}
            - name: {{ $name }}
              value: {{ $value | quote }}
            {{- end }}
          {{- include "ordo.probes" (dict "port" $values.port "tls" $root.Values.tls.grpc.enabled) | nindent 10 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          {{- with $mounts }}
          volumeMounts:
            {{- include "ordo.secretVolumeMounts" . | trim | nindent 12 }}
          {{- end }}
      {{- with $mounts }}
      volumes:
        {{- include "ordo.secretVolumes" . | trim | nindent 8 }}
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
