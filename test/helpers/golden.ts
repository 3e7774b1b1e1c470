/** The admin CLI's HELP text of the original ClusterODM 1.5.8, byte for byte (TRANSCRIPTS.md §3). */
export const GOLDEN_HELP = [
  'NODE ADD <hostname> <port> [token] - Add new node',
  'NODE DEL <node number> - Remove a node',
  'NODE INFO <node number> - View node info',
  'NODE LIST - List nodes',
  'NODE LOCK <node number> - Stop forwarding tasks to this node',
  'NODE UNLOCK <node number> - Resume forwarding tasks to this node',
  'NODE UPDATE - Update all nodes info',
  'NODE BEST <number of images> - Show best node for the number of images',
  'ROUTE INFO <taskId> - Find route information for task',
  'ROUTE LIST [node number] - List routes',
  'TASK LIST [node number] - List tasks',
  'TASK INFO <taskId> - View task info',
  'TASK OUTPUT <taskId> [lines] - View task output',
  'TASK CANCEL <taskId> - Cancel task',
  'TASK REMOVE <taskId> - Remove task',
  'ASR VIEWCMD <number of images> - View command used to create a machine',
  '!! - Repeat last command',
]
  .map((l) => `${l}\r\n`)
  .join('');
