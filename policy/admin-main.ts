// Entry point of bin/qubes-policy-admin, the qrexec service program of the policy admin API.
import { qrexecAdminMain } from './admin-cli.js';

process.exitCode = await qrexecAdminMain();
