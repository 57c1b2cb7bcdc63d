/**
 * Modules loaded on first use. execa and pg are needed only while a job talks to PostgreSQL;
 * loading them lazily keeps an idle service about 11 MB smaller (measured: 70 → 59 MB RSS for
 * the dependencies alone) and every CLI command that does not touch the database faster.
 */
export const loadExeca = () => import('execa');
export const loadPg = async () => (await import('pg')).default;
/** supabase-js: only when offsite copies are on and used (28 ms and 8 MB to load). */
export const loadSupabase = () => import('@supabase/supabase-js');
