#!/bin/sh
# Start the oracle RabbitMQ 3.10.8 (Debian bookworm package) in the background.
# Listens on all interfaces (0.0.0.0/[::]) port ${RABBITMQ_NODE_PORT:-5672}, management on 15672.
# Optional: CONNECTION_MAX=N to set the broker-wide connection_max.
set -e
command -v rabbitmq-server >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server
{
  echo "listeners.tcp.default = ${RABBITMQ_NODE_PORT:-5672}"
  echo "management.tcp.port = 15672"
  echo "loopback_users.guest = true"
  [ -n "$CONNECTION_MAX" ] && echo "connection_max = $CONNECTION_MAX"
  true
} > /etc/rabbitmq/rabbitmq.conf
chmod 644 /etc/rabbitmq/rabbitmq.conf
rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
rabbitmq-server -detached
# wait for the node to boot
rabbitmqctl await_startup --timeout 120 >/dev/null 2>&1 || rabbitmqctl wait --timeout 120 /var/lib/rabbitmq/mnesia/rabbit@$(hostname -s).pid
rabbitmqctl status | grep -A3 -i listeners || true
