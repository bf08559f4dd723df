#!/usr/bin/env bash
# Makes amqprs's own tests (written for a docker RabbitMQ on localhost:5672
# with user "user"/"bitnami") connect to $AMQP_PORT (default 5672) as
# guest/guest. Run once on a pristine checkout: scripts/client-suites/patch-amqprs.sh <amqprs dir>
set -euo pipefail
dir=${1:?amqprs source directory}
port='std::env::var("AMQP_PORT").ok().and_then(|p| p.parse::<u16>().ok()).unwrap_or(5672)'
files=$(grep -rl 'bitnami\|5672\|with_user_id("user")' "$dir/amqprs/src" "$dir/amqprs/tests" --include='*.rs')
sed -i \
  -e "s/\"localhost\", 5672, \"user\", \"bitnami\"/\"localhost\", $port, \"guest\", \"guest\"/g" \
  -e "s/SplitConnection::open(\"localhost:5672\")/SplitConnection::open(\&format!(\"localhost:{}\", $port))/g" \
  -e 's/new_plain("user", "bitnami")/new_plain("guest", "guest")/g' \
  -e 's/new_amqplain("user", "bitnami")/new_amqplain("guest", "guest")/g' \
  -e "s/OpenConnectionArguments::default()\$/OpenConnectionArguments::default().port($port)/" \
  -e 's/with_user_id("user")/with_user_id("guest")/g' \
  $files
# The getters test checks the literal arguments, not a connection.
sed -i -e '/fn test_connection_getters/,/^    }/s/new("localhost", .*, "guest", "guest")/new("localhost", 5672, "guest", "guest")/' \
  "$dir/amqprs/src/api/connection.rs"
