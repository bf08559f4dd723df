// Preloaded with `node --require`: some client test suites hard-code the
// AMQP port 5672. This sends every TCP connection aimed at port
// AMQP_REDIRECT_FROM (default 5672) to AMQP_REDIRECT_TO instead, so a suite
// runs unchanged against a broker on another port.
'use strict';
const net = require('node:net');

const to = Number(process.env.AMQP_REDIRECT_TO);
const from = Number(process.env.AMQP_REDIRECT_FROM || 5672);

if (to) {
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...args) {
    const first = args[0];
    if (Array.isArray(first)) {
      // Internal normalized form [options, cb].
      const opts = first[0];
      if (opts && Number(opts.port) === from && !opts.path) first[0] = { ...opts, port: to };
    } else if (first && typeof first === 'object') {
      if (Number(first.port) === from && !first.path) args[0] = { ...first, port: to };
    } else if (Number(first) === from) {
      args[0] = to;
    }
    return connect.apply(this, args);
  };
}
