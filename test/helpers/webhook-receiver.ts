/**
 * Real HTTP webhook receivers for alert tests: one that records what it is sent and answers 200,
 * one that accepts the request and never answers, and a port where nothing listens.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeNow, listenLocal } from './local-http.js';

/** A webhook receiver on 127.0.0.1; its URL carries a secret path part, as a Slack webhook's does. */
export class Receiver {
  /** Requests as they arrived: path and parsed JSON body. */
  readonly received: Array<{ path: string | undefined; body: any }> = [];
  private server!: http.Server;
  url = '';

  /** `answer: false`: read each request, then never answer it (a receiver that hangs). */
  constructor(private readonly opts: { answer: boolean } = { answer: true }) {}

  async start(secretPath = '/hooks/T000/B000/s3cr3t-webhook-part'): Promise<this> {
    this.server = http.createServer(async (req, res) => {
      let body = '';
      for await (const c of req) body += c;
      this.received.push({ path: req.url, body: JSON.parse(body) });
      if (this.opts.answer) res.writeHead(200).end('ok');
    });
    this.url = `${await listenLocal(this.server)}${secretPath}`;
    return this;
  }

  async stop(): Promise<void> {
    await closeNow(this.server);
  }
}

/** A port nothing listens on (taken, then given back): connections to it are refused. */
export async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
