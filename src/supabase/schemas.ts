/**
 * What the Management API returns, as zod schemas mirroring Supabase's published OpenAPI
 * description (../shared/contracts), made lenient where real responses vary: optional fields may
 * be absent (`physical_backup_data` may be `{}`, `backups[].id` is missing in older responses),
 * enum values this program does not act on are accepted as strings, and unknown fields pass.
 */
import { z } from 'zod';

/** Backup statuses (V1BackupsResponse.backups[].status) this program acts on; others are kept as text. */
export const BACKUP_STATUS = { completed: 'COMPLETED', failed: 'FAILED' } as const;

export const backupsResponse = z.looseObject({
  region: z.string(),
  walg_enabled: z.boolean(),
  pitr_enabled: z.boolean(),
  backups: z.array(
    z.looseObject({
      id: z.number().int().optional(),
      is_physical_backup: z.boolean(),
      status: z.string(),
      inserted_at: z.string(),
    }),
  ),
  physical_backup_data: z
    .looseObject({
      earliest_physical_backup_date_unix: z.number().int().optional(),
      latest_physical_backup_date_unix: z.number().int().optional(),
    })
    .default({}),
});
export type BackupsResponse = z.output<typeof backupsResponse>;

export const projectResponse = z.looseObject({
  ref: z.string(),
  name: z.string(),
  region: z.string(),
  status: z.string(),
  created_at: z.string().optional(),
  organization_slug: z.string().optional(),
  database: z.looseObject({ host: z.string(), version: z.string().optional() }).optional(),
});
export type ProjectResponse = z.output<typeof projectResponse>;

const addonVariant = z.looseObject({ id: z.string(), name: z.string().optional() });

export const addonsResponse = z.looseObject({
  selected_addons: z.array(z.looseObject({ type: z.string(), variant: addonVariant })),
  available_addons: z.array(z.looseObject({ type: z.string(), name: z.string().optional(), variants: z.array(addonVariant).optional() })).default([]),
});
export type AddonsResponse = z.output<typeof addonsResponse>;

export const scheduleResponse = z.looseObject({
  schedule_for: z.string(),
  updated_at: z.string().optional(),
});
export type ScheduleResponse = z.output<typeof scheduleResponse>;
