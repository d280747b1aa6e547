// Produce a request event, ask for a route and wait for the decision, verify a signed command.
// Env: KAFKA_BOOTSTRAP_SERVERS, LOOPWISE_TOPIC_PREFIX (default "lw."), LOOPWISE_SIGNING_KEY,
//      COMMAND_JSON (a command record to verify, e.g. one read from lw.commands.remediation).
// Prints one JSON line per step; exits non-zero when a step fails.
'use strict';

const { Kafka, logLevel } = require('kafkajs');
const { requestEvent, routeRequest, verifyCommand } = require('./loopwise');

async function main() {
  const prefix = process.env.LOOPWISE_TOPIC_PREFIX || 'lw.';
  const kafka = new Kafka({ clientId: 'loopwise-node-example', brokers: process.env.KAFKA_BOOTSTRAP_SERVERS.split(','),
    logLevel: logLevel.ERROR });
  const producer = kafka.producer();
  const consumer = kafka.consumer({ groupId: `node-example-${process.pid}-${Date.now()}`, maxWaitTimeInMs: 50,
    sessionTimeout: 6000, heartbeatInterval: 1000 });
  await producer.connect();
  await consumer.connect();
  const requestId = `node-${process.pid}-${Date.now()}`;

  const event = requestEvent({ requestId, workflow: 'support-bot', version: 'v1', route: 'gpt-large', tenant: 'acme',
    task: 'summarize', latencyMs: 420.5, costUsd: 0.0021, tokensIn: 310, tokensOut: 95 });
  await producer.send({ topic: `${prefix}requests`, messages: [{ key: requestId, value: JSON.stringify(event),
    headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } }] });
  console.log(JSON.stringify({ step: 'produced', topic: `${prefix}requests`, request_id: requestId }));

  await consumer.subscribe({ topic: `${prefix}route.decisions`, fromBeginning: true });
  const decision = new Promise((resolve) => {
    consumer.run({ eachMessage: async ({ message }) => {
      const record = JSON.parse(message.value.toString('utf8'));
      if (record.request_id === requestId) resolve(record);
    } });
  });
  const ask = routeRequest({ requestId, workflow: 'support-bot', tenant: 'acme', task: 'summarize' });
  await producer.send({ topic: `${prefix}route.requests`, messages: [{ key: requestId, value: JSON.stringify(ask) }] });
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('no route decision in 60 s')), 60000));
  const answer = await Promise.race([decision, timeout]);
  console.log(JSON.stringify({ step: 'decision', request_id: answer.request_id, route: answer.route,
    reason: answer.reason }));

  if (process.env.COMMAND_JSON) {
    const command = JSON.parse(process.env.COMMAND_JSON);
    let verdict = 'valid';
    try { verifyCommand(command, process.env.LOOPWISE_SIGNING_KEY || ''); } catch (e) { verdict = e.message; }
    console.log(JSON.stringify({ step: 'verified', command_id: command.command_id, verdict }));
  }
  await consumer.disconnect();
  await producer.disconnect();
}

main().catch((e) => { console.error(e); process.exit(1); });
