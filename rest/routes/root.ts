// /rest/v0 itself: the list of collections.
import type { FastifyInstance } from 'fastify';
import { BASE } from '../context.js';

export const COLLECTIONS = ['vms', 'vdis', 'srs', 'pools', 'hosts', 'labels', 'tasks', 'backup-profiles', 'events'];

export async function rootRoutes(app: FastifyInstance): Promise<void> {
  app.get('/', { schema: { summary: 'the collections', tags: ['root'] } }, async () => COLLECTIONS.map((c) => `${BASE}/${c}`));
}
