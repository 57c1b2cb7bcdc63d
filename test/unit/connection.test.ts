import { describe, expect, it } from 'vitest';
import { HbError } from '../../src/domain/errors.js';
import { databaseIdentity, libpqArgs, parseConnInfo, safeUrl, sameDatabase } from '../../src/pg/connection.js';
import { serverMajor } from '../../src/pg/server.js';
import { redactor } from '../../src/util/redact.js';

describe('connection strings', () => {
  it('parses URLs and key=value strings to the same parts', () => {
    const a = parseConnInfo('postgresql://app:pw1@db.example.com:6543/main?sslmode=require', 'DATABASE_URL', {});
    const b = parseConnInfo("host=db.example.com port=6543 user=app password='pw1' dbname=main sslmode=require", 'DATABASE_URL', {});
    for (const c of [a, b]) {
      expect(c).toMatchObject({ host: 'db.example.com', port: 6543, user: 'app', database: 'main', password: 'pw1' });
      expect(c.params).toEqual({ sslmode: 'require' });
    }
  });

  it('a malformed key=value string is refused without echoing any of it', () => {
    const bad = "host=db.example.com password='s3cr3t-and-more";
    let err: unknown;
    try {
      parseConnInfo(bad, 'DATABASE_URL', {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HbError);
    const msg = (err as HbError).message;
    expect(msg).toMatch(/DATABASE_URL is not a valid connection string/);
    expect(msg).not.toContain('s3cr3t');
    expect(msg).not.toContain('db.example.com');
  });

  it('keeps sslpassword out of the shown URL and registers it as a secret', () => {
    const c = parseConnInfo('postgresql://app@db.example.com/main?sslmode=verify-full&sslpassword=k3y-pass-phrase', 'DATABASE_URL', {});
    expect(safeUrl(c)).toBe('postgresql://app@db.example.com:5432/main?sslmode=verify-full');
    expect(redactor.redact('oops k3y-pass-phrase leaked')).not.toContain('k3y-pass-phrase');
    // libpq tools still receive it, or they could not open the key
    expect(libpqArgs(c).dbname).toContain('sslpassword=k3y-pass-phrase');
  });

  it('never puts the password on the command line', () => {
    const c = parseConnInfo('postgresql://app:top%20secret@db.example.com/main', 'DATABASE_URL', {});
    const { dbname, env } = libpqArgs(c);
    expect(dbname).not.toContain('top secret');
    expect(env.PGPASSWORD).toBe('top secret');
  });
});

describe('which database a command means', () => {
  const id = (url: string) => databaseIdentity(parseConnInfo(url, 'DATABASE_URL', {}));
  it('through a Supabase pooler, the project is the user\'s .<ref>: another project on the same host, port and database is another database', () => {
    const pooler = 'aws-0-eu-central-1.pooler.supabase.com:5432/postgres';
    const prod = id(`postgresql://postgres.prodrefaaaaaaaaaaaaaa:pw@${pooler}`);
    expect(sameDatabase(prod, id(`postgresql://postgres.stagingrefbbbbbbbbbb:pw@${pooler}`))).toBe(false);
    expect(sameDatabase(prod, id(`postgresql://postgres.PRODREFAAAAAAAAAAAAAA:other@${pooler}`))).toBe(true);
    expect(sameDatabase(prod, id(`postgresql://app_user.prodrefaaaaaaaaaaaaaa@${pooler}`))).toBe(true);
    expect(sameDatabase(prod, id(`postgresql://postgres@${pooler}`))).toBe(false);
  });
  it('elsewhere another user on the same database still means it, and loopback names are one server', () => {
    expect(sameDatabase(id('postgresql://postgres@db.example.com:5432/app'), id('postgresql://reader@db.example.com:5432/app'))).toBe(true);
    expect(sameDatabase(id('postgresql://postgres@127.0.0.1:5432/app'), id('postgresql://postgres@localhost:5432/app'))).toBe(true);
    expect(sameDatabase(id('postgresql://postgres@db.example.com:5432/app'), id('postgresql://postgres@db.example.com:5432/other'))).toBe(false);
  });
});

describe('server versions', () => {
  it('reads the major from server_version_num, two-part before 10', () => {
    expect(serverMajor(150004)).toBe(15);
    expect(serverMajor(170000)).toBe(17);
    expect(serverMajor(100023)).toBe(10);
    expect(serverMajor(90624)).toBe(9.6);
    expect(serverMajor(90224)).toBe(9.2);
  });
});
